"""Hardware RAID controllers through storcli/perccli: controller, virtual and physical drive states, batteries."""
