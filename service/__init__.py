"""HTTP edge: parse, call the domain, render. No business logic lives here."""
