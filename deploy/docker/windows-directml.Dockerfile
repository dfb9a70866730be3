# Windows GPU node image (DirectML lane). Build on a Windows host with process isolation:
#   docker build -f deploy/docker/windows-directml.Dockerfile -t dops-node-dml .
# Not built or run in this repository's CI (no Windows host); see README "What has run where".
FROM mcr.microsoft.com/windows/servercore:ltsc2022
SHELL ["powershell", "-Command", "$ErrorActionPreference = 'Stop';"]
RUN Invoke-WebRequest https://nodejs.org/dist/v20.19.5/node-v20.19.5-x64.msi -OutFile node.msi; \
    Start-Process msiexec -Wait -ArgumentList '/i node.msi /qn'; Remove-Item node.msi
RUN Invoke-WebRequest https://www.python.org/ftp/python/3.11.9/python-3.11.9-amd64.exe -OutFile py.exe; \
    Start-Process .\py.exe -Wait -ArgumentList '/quiet InstallAllUsers=1 PrependPath=1'; Remove-Item py.exe
WORKDIR C:/dops
COPY . .
RUN npm ci --no-audit --no-fund; npx nx run proto:generate
RUN python -m venv .venv; .venv/Scripts/pip install -r python-workers/requirements/directml.txt; \
    .venv/Scripts/pip install --no-deps -e python-workers
ENV DOPS_BACKEND=directml DOPS_PYTHON=C:/dops/.venv/Scripts/python.exe
ARG SERVICE=device
ENV DOPS_SERVICE=${SERVICE}
CMD ["powershell", "-Command", "npx tsx apps/$env:DOPS_SERVICE/src/main.ts"]
