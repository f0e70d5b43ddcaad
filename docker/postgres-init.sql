-- One database per service on the one PostgreSQL server (each service owns its schema; they
-- share nothing but the server). Mounted into /docker-entrypoint-initdb.d by docker-compose.yml:
-- the postgres image runs it once, when it initialises an empty data volume. The services also
-- create their database if it is missing, so an existing volume without these is still fine.
CREATE DATABASE shop_checkout;
CREATE DATABASE shop_cart;
CREATE DATABASE shop_inventory;
