-- The W3C traceparent of the span that published each event (NULL when tracing was off), so its
-- deliveries, after a restart or from a dead letter too, continue the publisher's trace.
ALTER TABLE events ADD COLUMN traceparent TEXT;
ALTER TABLE dead_letters ADD COLUMN traceparent TEXT;
