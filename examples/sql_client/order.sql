-- An order and its receipt job in one transaction: both exist after COMMIT, neither after a ROLLBACK.
-- psql variables: email, item. Prints the job id.
BEGIN;
WITH placed AS (
    INSERT INTO orders (email, item) VALUES (:'email', :'item') RETURNING id
)
SELECT conveyor.enqueue(
    'send_receipt',
    jsonb_build_object('order_id', placed.id, 'email', :'email'),
    queue => 'mail',
    tags => ARRAY['order:' || placed.id],
    unique_key => 'receipt:' || placed.id          -- enqueueing twice for one order returns the same job
)
FROM placed;
COMMIT;
