package guest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
)

// The configs in examples/ run as written once SetupExamples has put
// what they name in place: the guest under /srv/vm/guest, each VM's
// shared directory owned by its virtiofsd's uid, the desk VM's disk
// image, and the Rust virtiofsd in /var/cache/vmsup-test/virtiofsd/current.
const (
	ExampleRoot     = "/srv/vm"
	ExampleHello    = "hello.txt" // written by the guest into its share
	ExampleDiskFile = "disk.txt"  // the disk's first line, copied by the guest
	ExampleDiskLine = "vmsup example disk, served by qemu-storage-daemon over vhost-user-blk"
)

// ExampleShares maps each example VM to its shared directory and the uid
// of its virtiofsd, as examples/<name>.json says.
var ExampleShares = map[string]struct {
	Dir string
	UID int
}{
	"work": {ExampleRoot + "/work", 2001},
	"desk": {ExampleRoot + "/desk/share", 2101},
}

// ExampleDisk is the desk VM's disk image and the uid of its
// qemu-storage-daemon.
const (
	ExampleDisk    = ExampleRoot + "/desk/disk.img"
	ExampleDiskUID = 2103
)

// SetupExamples prepares this machine for the examples (as root): it
// fetches the Rust virtiofsd and the guest kernel, builds the guest's
// initramfs (ExampleInit), and makes the shares and the disk image. The
// shares are emptied of the guest's earlier files. It returns the
// virtiofsd directory.
func SetupExamples() (string, error) {
	if err := RequireHostTools(); err != nil {
		return "", err
	}
	vfsd, err := RustVirtiofsd()
	if err != nil {
		return "", err
	}
	kdir, err := Kernel()
	if err != nil {
		return "", err
	}
	gdir := filepath.Join(ExampleRoot, "guest")
	if err := os.MkdirAll(gdir, 0o755); err != nil {
		return "", err
	}
	b, err := os.ReadFile(filepath.Join(kdir, "vmlinuz"))
	if err != nil {
		return "", err
	}
	if err := writeAtomic(filepath.Join(gdir, "vmlinuz"), b); err != nil {
		return "", err
	}
	initrd := filepath.Join(gdir, "initrd")
	tmp := fmt.Sprintf("%s.new%d", initrd, os.Getpid()) // tests of several packages may set up at once
	if err := BuildInitramfs(tmp, InitramfsOptions{
		KernelDir: kdir, Modules: ExampleModules,
		Init: ExampleInit("share", ExampleHello, "written by the guest\n", ExampleDiskFile),
	}); err != nil {
		return "", err
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, initrd); err != nil {
		return "", err
	}
	for _, sh := range ExampleShares {
		if err := os.MkdirAll(sh.Dir, 0o755); err != nil {
			return "", err
		}
		if err := os.Chown(sh.Dir, sh.UID, sh.UID); err != nil {
			return "", err
		}
		for _, f := range []string{ExampleHello, ExampleDiskFile} {
			if err := os.Remove(filepath.Join(sh.Dir, f)); err != nil && !os.IsNotExist(err) {
				return "", err
			}
		}
	}
	disk := append([]byte(ExampleDiskLine+"\n"), make([]byte, 1<<20)...)
	if old, err := os.ReadFile(ExampleDisk); err != nil || !bytes.Equal(old, disk) {
		if err := writeAtomic(ExampleDisk, disk); err != nil {
			return "", err
		}
	}
	if err := os.Chown(ExampleDisk, ExampleDiskUID, ExampleDiskUID); err != nil {
		return "", err
	}
	if err := os.Chmod(ExampleDisk, 0o600); err != nil {
		return "", err
	}
	return vfsd, nil
}

func writeAtomic(path string, b []byte) error {
	tmp := fmt.Sprintf("%s.new%d", path, os.Getpid())
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("guest: %w", err)
	}
	return os.Rename(tmp, path)
}
