-- Shipments of orders that consumed what their order held, by the shipment's event. Like the
-- reservations, kept through a rebuild of the inventory projection: applying the shipment again
-- finds it here and does not consume the reservation a second time.
CREATE TABLE inventory_conversions (
    seq             INTEGER NOT NULL,
    order_id        TEXT    NOT NULL,
    sku             TEXT    NOT NULL,
    location        TEXT    NOT NULL,
    quantity        INTEGER NOT NULL,
    PRIMARY KEY (seq, order_id, sku, location)
) WITHOUT ROWID;
