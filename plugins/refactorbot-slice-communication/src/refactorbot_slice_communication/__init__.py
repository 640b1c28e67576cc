"""refactorbot communication slice: runs the chat channels and carries messages between them and the agent."""
