"""CPU runtime/precision study (issue 18): see __main__."""
