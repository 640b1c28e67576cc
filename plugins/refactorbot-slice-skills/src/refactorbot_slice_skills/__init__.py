"""refactorbot-slice-skills: Agent Skills for refactorbot agents."""
