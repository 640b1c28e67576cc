"""refactorbot Telegram channel: a bot by long polling or webhook, replies in Telegram HTML."""
