"""Protocol front ends (ftp, sftp, http): wire commands in, gateway.ops calls out."""
