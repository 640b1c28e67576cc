-- Keyset paging of one slice's logs (WHERE slice_id = ? AND id < ? ORDER BY id DESC).
CREATE INDEX idx_logs_slice_id ON logs(slice_id, id);
