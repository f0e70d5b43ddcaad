-- A cart is its items; a cart without items is indistinguishable from no cart.
CREATE TABLE cart_items (
    cart_id    TEXT NOT NULL,
    sku        TEXT NOT NULL,
    quantity   BIGINT NOT NULL CHECK (quantity > 0),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (cart_id, sku)
);
