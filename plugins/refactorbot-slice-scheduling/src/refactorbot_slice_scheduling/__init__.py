"""refactorbot-slice-scheduling: jobs on cron, interval and one-shot schedules, heartbeats and alerts."""
