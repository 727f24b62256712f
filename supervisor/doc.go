// Package supervisor owns one VM's life, from `vmsup run` to the end of
// its PID 1: the outer and inner stages, the claim of the VM's cgroup and
// runtime directory, and the one event loop that owns all VM state (the
// state machine in vm.go) with its policy as pure functions (policy.go).
// It must not remove what does not carry its mark (package owned), nor
// write outside what it created but the controllers in the cgroup
// ancestors' subtree_control; the steps between fork and exec of a
// service are the launcher's (package launcher), not its.
package supervisor
