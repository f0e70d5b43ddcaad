-- Checkout's replica of the catalogue, fed only by inventory's events (no call to inventory).
-- It is also checkout's availability ledger: `reserved` counts units checkout has sold that
-- inventory's stock figure does not show yet, so available = stock - reserved, and a
-- conditional UPDATE on it in the checkout transaction can never sell a unit twice.
CREATE TABLE catalogue (
    sku              TEXT PRIMARY KEY,
    -- NULL until product_registered arrives (stock_changed may overtake it)
    name             TEXT,
    unit_price_cents BIGINT,
    stock            BIGINT NOT NULL DEFAULT 0,
    stock_version    BIGINT NOT NULL DEFAULT 0,
    reserved         BIGINT NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE orders (
    order_id             UUID PRIMARY KEY,
    cart_id              TEXT NOT NULL,
    customer_id          TEXT,
    status               TEXT NOT NULL,
    total_cents          BIGINT NOT NULL,
    currency             TEXT NOT NULL,
    payment_id           TEXT NOT NULL,
    paid_at              TIMESTAMPTZ NOT NULL,
    cart_updated_at      TIMESTAMPTZ,
    inventory_updated_at TIMESTAMPTZ
);

CREATE TABLE order_lines (
    order_id         UUID NOT NULL REFERENCES orders (order_id),
    sku              TEXT NOT NULL,
    quantity         BIGINT NOT NULL CHECK (quantity > 0),
    unit_price_cents BIGINT NOT NULL,
    -- set when inventory's stock_changed for this sale arrived (the reservation was released)
    stock_applied    BOOLEAN NOT NULL DEFAULT false,
    PRIMARY KEY (order_id, sku)
);
