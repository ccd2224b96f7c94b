"""HTTP routes, one router per resource; they translate HTTP to data-plane calls and back."""
