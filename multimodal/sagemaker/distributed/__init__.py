"""Distributed training on Ray across the hosts of one SageMaker training job: the leader (the first host) starts
the Ray head, the other hosts join it, and the leader spreads embedding chunks and member fits over every host.
A one-host job never imports this package."""
