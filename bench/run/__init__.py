"""The three schedules a strategy runs under: lock-step steps (lockstep), decoupled steps ended by messages
(decoupled), federated rounds (rounds)."""
