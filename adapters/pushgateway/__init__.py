"""The push gateway client (httpx): signed, idempotent POSTs of notifications."""
