"""Ephemeral state shared by the nodes (presence, typing): in memory on a single
node, in Redis when several nodes run behind a load balancer."""
