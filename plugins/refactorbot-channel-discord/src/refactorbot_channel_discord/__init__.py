"""refactorbot Discord channel: the Gateway in, REST out, and the optional interactions endpoint /hooks/discord."""
