-- One database per Souk service, owned by the souk role (POSTGRES_USER).
CREATE DATABASE users OWNER souk;
CREATE DATABASE catalog OWNER souk;
CREATE DATABASE inventory OWNER souk;
CREATE DATABASE payments OWNER souk;
CREATE DATABASE orders OWNER souk;
