// kvbench-ready: the smallest program that reports readiness the way a
// bucket does, for the spawn floor CREATE is measured against (kvbench
// spawn-floor): statically linked like bucketd, it writes one newline to
// descriptor 3 (the readiness pipe its spawner hands it) and exits. What
// CREATE costs above this is registryd's and bucketd's own work.
#include <unistd.h>

int main()
{
    return ::write(3, "\n", 1) == 1 ? 0 : 1;
}
