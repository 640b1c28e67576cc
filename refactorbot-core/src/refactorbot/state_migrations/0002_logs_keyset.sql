-- Keyset paging of one slice's logs (WHERE slice_id = ? AND id < ? ORDER BY id DESC).
CREATE INDEX idx_logs_slice_id ON logs(slice_id, id);
-- One slice's logs at a minimum level (WHERE slice_id = ? AND level >= ? ORDER BY id DESC).
CREATE INDEX idx_logs_slice_level_id ON logs(slice_id, level, id);
