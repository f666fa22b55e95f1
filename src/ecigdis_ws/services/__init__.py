"""Domain logic: what each chat action means, independent of Socket.IO and SQL."""
