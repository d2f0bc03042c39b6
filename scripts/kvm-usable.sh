# Sourced by the scripts that need to know whether this host's KVM can be used.
# The character-device test comes first: `<>` on a missing path would create a file.
kvm_usable() {
	[ -c /dev/kvm ] && (exec 3<>/dev/kvm) 2>/dev/null
}
