#!/usr/bin/env bash
# One order through Souk's gateway, as a customer would place it: sign up,
# log in; as the admin, create a product and stock it; give payments a card
# for a payment method (its token); order two with it, and wait for the saga
# to confirm the order. Exits 1 unless it is confirmed.
# Each step is tried for up to a minute: a system that has just started may
# answer 503 until every service has registered (the order's retries reuse
# its Idempotency-Key, so they cannot place it twice).
# Usage: order.sh BASE_URL ADMIN_PASSWORD [ADMIN_EMAIL]
set -euo pipefail
B=${1:?gateway base URL, e.g. http://127.0.0.1:30080}
ADMIN_PASSWORD=${2:?the admin password}
ADMIN_EMAIL=${3:-admin@souk.local}
json() { curl -sf -H 'Content-Type: application/json' "$@"; }
try() { # command...: its output once it succeeds, within 60 tries a second apart
  local out
  for _ in $(seq 1 60); do
    if out=$("$@"); then printf '%s' "$out"; return 0; fi
    sleep 1
  done
  echo "order.sh: gave up on: $*" >&2; return 1
}
field() { sed -E "s/.*\"$1\":\"([^\"]+)\".*/\1/"; }   # a string field of a one-line JSON answer

email="order-sh-$(date +%s%N)@example.com"
key="order-sh-$(date +%s%N)"
try json -XPOST "$B/api/auth/register" -d "{\"name\":\"Ada\",\"email\":\"$email\",\"password\":\"correct horse battery\"}" >/dev/null
tok=$(try json -XPOST "$B/api/auth/login" -d "{\"email\":\"$email\",\"password\":\"correct horse battery\"}" | field access_token)
adm=$(try json -XPOST "$B/api/auth/login" -d "{\"email\":\"$ADMIN_EMAIL\",\"password\":\"$ADMIN_PASSWORD\"}" | field access_token)
product=$(try json -XPOST "$B/api/products" -H "Authorization: Bearer $adm" \
  -d '{"name":"Brass Lamp","description":"warm light","price":{"amount":4999,"currency":"EUR"}}' | field id)
try json -XPUT "$B/api/inventory/$product" -H "Authorization: Bearer $adm" -d '{"available":10}' >/dev/null
# payments alone keeps the number, sealed with the keyring's keys; orders sees only the token
method=$(try json -XPOST "$B/api/payment-methods" -H "Authorization: Bearer $tok" -d '{"card":"4242424242424242"}' | field token)
order=$(try json -XPOST "$B/api/orders" -H "Authorization: Bearer $tok" -H "Idempotency-Key: $key" \
  -d "{\"items\":[{\"product_id\":\"$product\",\"quantity\":2}],\"payment_method\":\"$method\"}" | field id)
status=""
for _ in $(seq 1 100); do
  status=$(json "$B/api/orders/$order" -H "Authorization: Bearer $tok" | field status) || true
  [ "$status" = confirmed ] && break
  sleep 0.2
done
echo "order $order: $status; inventory: $(json "$B/api/inventory/$product")"
[ "$status" = confirmed ]
