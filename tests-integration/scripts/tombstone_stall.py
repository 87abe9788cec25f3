"""Server stalls while tombstones expire: fills N live versions and N tombstones
through pipelined SINK.STRING / SINK.DEL ... VERSION, then times PING round trips for 8 s.

Usage: python3 tombstone_stall.py PORT N  (the server loaded with the module, tombstone-ttl 5)
"""
import socket
import sys
import time

port=int(sys.argv[1]); n=int(sys.argv[2])
s=socket.create_connection(('127.0.0.1',port))
def cmd(*a):
    out=b'*%d\r\n'%len(a)
    for x in a:
        x=x if isinstance(x,bytes) else str(x).encode()
        out+=b'$%d\r\n%s\r\n'%(len(x),x)
    return out
def send_all(cmds):
    s.sendall(b''.join(cmds))
    need=len(cmds); data=b''
    while data.count(b'\r\n')<need:
        data+=s.recv(1<<20)
# live versions n, tombstones n
for start in range(0,n,50000):
    send_all([cmd('SINK.STRING','live:%d'%i,'x','VERSION',1) for i in range(start,min(n,start+50000))])
for start in range(0,n,50000):
    send_all([cmd('SINK.STRING','gone:%d'%i,'x','VERSION',1) for i in range(start,min(n,start+50000))])
    send_all([cmd('SINK.DEL','gone:%d'%i,'VERSION',2) for i in range(start,min(n,start+50000))])
# measure PING latency for 6 s (tombstones expire after tombstone-ttl)
time.sleep(1)
worst=0; t_end=time.time()+8; samples=[]
while time.time()<t_end:
    t=time.perf_counter(); s.sendall(cmd('PING')); s.recv(100); d=(time.perf_counter()-t)*1000
    samples.append(d); worst=max(worst,d)
samples.sort()
print("pings %d, over 2 ms: %d, p99.9 %.3f ms, worst %.3f ms"%(len(samples),sum(1 for x in samples if x>2),samples[int(len(samples)*0.999)],worst))
