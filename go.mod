module vmsup

go 1.26.0

require (
	github.com/landlock-lsm/go-landlock v0.11.0
	golang.org/x/sys v0.49.0
)

require (
	github.com/vishvananda/netlink v1.3.1 // indirect
	github.com/vishvananda/netns v0.0.5 // indirect
	kernel.org/pub/linux/libs/security/libcap/psx v1.2.77 // indirect
)
