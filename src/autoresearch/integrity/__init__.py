"""What keeps the four constraints honest: scope, tripwires, the sealed ledger, rebuild."""
