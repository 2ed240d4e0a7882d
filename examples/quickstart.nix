# The quickstart: two small units that boot the built-in test guest (Debian's kernel
# and a busybox initramfs). `hypernix up examples/quickstart.nix` starts them.
{
  hypervisor.compute.tags = {
    small = { category = "performance"; priority = 40; values.resources.memory.size = "256Mi"; };
    elastic = { category = "performance"; priority = 60; values.resources.compute.burst = 400; };
  };
  hypervisor.compute.policies.demo = {
    tags = [ "small" ];
    defaults.workload.type = "persistent";
    defaults.labels.app = "quickstart";
  };
  hypervisor.compute.units = {
    alpha = {
      policies = [ "demo" ];
      network = [ { name = "eth0"; capability = "nat"; } ];
    };
    beta = {
      policies = [ "demo" ];
      tags = [ "elastic" ];
      resources.compute.units = 200;
    };
  };
}
