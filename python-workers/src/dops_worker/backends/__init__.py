"""Device backends (cuda, rocm, directml, cpu): selection, enumeration, capability probe, memory."""
