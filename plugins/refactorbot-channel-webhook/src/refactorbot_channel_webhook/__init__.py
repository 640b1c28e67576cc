"""refactorbot webhook channel: generic signed JSON in at /hooks/webhook, replies POSTed to a callback URL."""
