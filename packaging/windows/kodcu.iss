; Inno Setup 6 script: the Kodcu installer for Windows (x64).
;
;   iscc /DAppVersion=0.1.0 /DSourceDir=..\..\dist\kodcu packaging\windows\kodcu.iss
;
; Installs dist\kodcu (built by packaging\build.py) for the current user by default
; (no administrator rights; the wizard offers an all-users install), adds a
; Start-menu entry and an uninstaller. The output is dist\Kodcu-<version>-setup.exe.

#ifndef AppVersion
  #error Pass the version: iscc /DAppVersion=X.Y.Z (the workflow reads it from pyproject.toml)
#endif
#ifndef SourceDir
  #define SourceDir "..\..\dist\kodcu"
#endif

[Setup]
; The AppId identifies Kodcu for upgrades and uninstall: never change it.
AppId={{6B0E7C52-3F0D-4C8E-9D0A-2B7A51C4E8F1}
AppName=Kodcu
AppVersion={#AppVersion}
AppVerName=Kodcu {#AppVersion}
AppPublisher=Kodcu
DefaultDirName={autopf}\Kodcu
DefaultGroupName=Kodcu
DisableProgramGroupPage=yes
; Per-user by default: {autopf} is then %LOCALAPPDATA%\Programs.
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=commandline dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
; The default model is already compressed (4-bit weights): LZMA2 gains little on it
; but costs minutes, so the fast setting keeps the build short.
Compression=lzma2/fast
SolidCompression=yes
OutputDir=..\..\dist
OutputBaseFilename=Kodcu-{#AppVersion}-setup
UninstallDisplayIcon={app}\Kodcu.exe
UninstallDisplayName=Kodcu {#AppVersion}
WizardStyle=modern
; The app writes its data to the user's data folder, never to the install folder;
; uninstall leaves that data (conversations, models) in place.

[Files]
Source: "{#SourceDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\Kodcu"; Filename: "{app}\Kodcu.exe"
Name: "{group}\Uninstall Kodcu"; Filename: "{uninstallexe}"

[Run]
Filename: "{app}\Kodcu.exe"; Description: "Start Kodcu"; Flags: nowait postinstall skipifsilent
