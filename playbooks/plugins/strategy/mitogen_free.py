# Mitogen's free strategy (provisioning.strategy: mitogen_free) from the mitogen package installed beside Ansible
# (the [mitogen] extra; role execution_host pins it on execution hosts): found here through ansible.cfg's
# strategy_plugins wherever the project is, instead of a path into one machine's site-packages.
from ansible_mitogen.plugins.strategy.mitogen_free import StrategyModule  # noqa: F401
