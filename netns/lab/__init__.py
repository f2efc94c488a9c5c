"""A lab's lifecycle: plan (topology -> steps), apply (with an undo stack), up/down/status by ownership, the
lab's state file, impairments and readdressing while it runs."""
