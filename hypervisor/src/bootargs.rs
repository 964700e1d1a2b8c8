//! Applies the hypervisor's command line (`/chosen/bootargs`): the log level now, the
//! rest is returned for the later boot stages.
