-- Leave room in the pages of nodes so that the per-batch score updates are
-- HOT updates (no index maintenance): a storage parameter only, no change to
-- the table's definition. Existing pages gain room as rows are updated.

-- +goose Up
ALTER TABLE nodes SET (fillfactor = 50);

-- +goose Down
ALTER TABLE nodes RESET (fillfactor);
