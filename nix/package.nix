# vmsup as a nixpkgs package: both static binaries, vmsup and vmsup-exec,
# side by side in $out/bin (vmsup finds its launcher beside itself).
#
#   vmsup = pkgs.callPackage ./nix/package.nix { buildGoModule = pkgs.buildGo126Module; };
#
# vendorHash is the NAR hash of `go mod vendor`'s output for go.mod and
# go.sum as committed (nix/nix_test.go recomputes it: update it whenever
# go.sum changes). The tests need root, QEMU and s6, so none run in the
# build; `make test` runs them on a host.
{ buildGoModule }:

buildGoModule rec {
  pname = "vmsup";
  version = "0.1.0";

  # The repository without what builds and tests leave in it.
  src = builtins.path {
    name = "vmsup-src";
    path = ./..;
    filter = path: type:
      let base = baseNameOf path; in
      !(builtins.elem base [ ".git" "bin" "result" ] || builtins.match "result-.*" base != null);
  };

  vendorHash = "sha256-E6Eq5Dd8dfpqB/hXk99GklAu9bga1BhGFu8HGZriQBQ=";

  subPackages = [ "cmd/vmsup" "cmd/vmsup-exec" ];

  # Static: vmsup is an s6 run script's program and the Nix builder of
  # service directories (nix/lib.nix); vmsup-exec runs before any library
  # path of a service could matter.
  env.CGO_ENABLED = "0";
  ldflags = [ "-s" "-w" "-X main.version=${version}" ];
  flags = [ "-trimpath" ];

  doCheck = false;

  meta = {
    description = "Per-VM sandbox supervisor for s6 hosts";
    mainProgram = "vmsup";
    platforms = [ "x86_64-linux" "aarch64-linux" ];
  };
}
