"""refactorbot refactory slice: request, plan, coders on git worktrees, a test-gated merge queue."""
