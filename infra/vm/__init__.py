"""QEMU test bed: Debian images, VM launcher, Molecule glue."""
