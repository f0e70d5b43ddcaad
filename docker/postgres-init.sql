-- One database per service on the one PostgreSQL server (each service owns its schema; they
-- share nothing but the server). Mounted into /docker-entrypoint-initdb.d by docker-compose.yml:
-- the postgres image runs it once, when it initialises an empty data volume.
--
-- Least privilege: each service logs in as its own role, which owns its database and nothing
-- else, and no other role may connect to that database (CONNECT revoked from PUBLIC). The
-- passwords are development ones, matching docker-compose.yml; `shop provision` does the same
-- against any server (and updates passwords and ownership of an existing deployment).
CREATE ROLE checkout LOGIN PASSWORD 'checkout-dev' NOSUPERUSER NOCREATEDB NOCREATEROLE;
CREATE ROLE cart LOGIN PASSWORD 'cart-dev' NOSUPERUSER NOCREATEDB NOCREATEROLE;
CREATE ROLE inventory LOGIN PASSWORD 'inventory-dev' NOSUPERUSER NOCREATEDB NOCREATEROLE;

CREATE DATABASE shop_checkout OWNER checkout;
CREATE DATABASE shop_cart OWNER cart;
CREATE DATABASE shop_inventory OWNER inventory;

REVOKE ALL ON DATABASE shop_checkout FROM PUBLIC;
REVOKE ALL ON DATABASE shop_cart FROM PUBLIC;
REVOKE ALL ON DATABASE shop_inventory FROM PUBLIC;
