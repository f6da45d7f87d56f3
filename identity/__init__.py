"""Identity: normalised handles and the resolver that maps each handle to one customer."""
