enum GuestKernelPlaceholder {}
