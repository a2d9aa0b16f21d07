-- The service's own table: a job is enqueued in the same transaction as its order (see order.sql).
CREATE TABLE IF NOT EXISTS orders (
    id         bigserial PRIMARY KEY,
    email      text NOT NULL,
    item       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
