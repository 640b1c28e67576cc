-- The key/value table was never read or written: nothing in refactorbot stored state in it.
DROP TABLE IF EXISTS kv;
