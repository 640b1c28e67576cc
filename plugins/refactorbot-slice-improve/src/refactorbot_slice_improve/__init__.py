"""refactorbot self-improvement slice: plan, approve, test, deploy by hot reload, evaluate, keep or roll back."""
