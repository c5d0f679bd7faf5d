-- One database per Souk service, each owned by the souk role (the image's
-- POSTGRES_USER). Runs once, on an empty data directory.
CREATE DATABASE users OWNER souk;
CREATE DATABASE catalog OWNER souk;
CREATE DATABASE inventory OWNER souk;
CREATE DATABASE payments OWNER souk;
CREATE DATABASE orders OWNER souk;
