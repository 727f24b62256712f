// Command vmsup-exec turns itself into one service of a VM; vmsup starts
// it, never a user. See package launcher.
package main

import "vmsup/services/launcher"

func main() { launcher.Exec() }
