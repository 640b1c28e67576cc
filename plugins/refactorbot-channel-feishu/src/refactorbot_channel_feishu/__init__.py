"""refactorbot's Feishu / Lark channel (``[channels.feishu]``)."""
