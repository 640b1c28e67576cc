"""refactorbot console channel: talk to the agent from the terminal running `refactorbot serve`."""
