-- Inventory owns the products and their stock. `version` counts stock changes per sku and is
-- published with every stock_changed event, so consumers can ignore stale ones.
CREATE TABLE products (
    sku              TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    unit_price_cents BIGINT NOT NULL CHECK (unit_price_cents >= 0),
    stock            BIGINT NOT NULL CHECK (stock >= 0),
    version          BIGINT NOT NULL DEFAULT 1,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
