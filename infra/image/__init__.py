"""Node images: a node type's software installed once into a Debian root (``gigafactory image``), natively."""
