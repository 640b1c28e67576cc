-- Why a plan was made without the model planner, and why a task was reviewed without a model
-- (NULL: the model did it). Shown by `plan status`, the report and the dashboard.
ALTER TABLE plans ADD COLUMN planner_fallback TEXT;
ALTER TABLE tasks ADD COLUMN review_fallback TEXT;
