"""Ansible through ansible-runner: a wave or an execution host's shard of it (``ansible``), where it runs
(``execution``), how it is asked to stop (``cancel``), and what a phase reads from disk (``phase_files``)."""
